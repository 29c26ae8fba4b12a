//! The Iris HaaS broker: tenants, virtual infrastructures, placement, compute drivers.
