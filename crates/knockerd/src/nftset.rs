//! nftables set elements over netlink (placeholder: being written).
