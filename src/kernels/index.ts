/** The ops, with their kernels and gradients registered on import. */
export * from './batch_norm';
export * from './ghost_batch_norm';
export * from './group_norm';
export {compositeKernel} from './registry';
// Fused cpu kernels; other backends take the composite ones.
import './cpu';
