//! gmv-serve (being written)
