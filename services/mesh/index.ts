export { EmbeddedMesh, type EmbeddedMeshOptions, type MeshState } from './embedded-mesh.js';
