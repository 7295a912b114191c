//! The public op API, one file per op family: argument checks with typed
//! errors, the forward (a `Storage` primitive or a composition), and the
//! gradient rule.

pub mod adam;
pub mod attention;
pub mod batch_norm;
pub mod conv2d;
pub mod elementwise;
pub mod index;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod shape;
pub mod softmax;
