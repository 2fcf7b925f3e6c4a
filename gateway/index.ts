export { HttpEdge, type HttpEdgeOptions } from './http-edge.js';
export { httpStatusOf } from './http-status.js';
