//! NFLOG source (placeholder: being written).
