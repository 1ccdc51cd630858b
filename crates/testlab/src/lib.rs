//! Test-only: build hosts, containers and routers out of network namespaces
