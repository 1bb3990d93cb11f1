//! gmv-kafka (being written)
