//! The Iris emulated inter-cloud testbed.
