export { EmbeddedMesh, type MeshState } from './embedded-mesh.js';
