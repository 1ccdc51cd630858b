//! Network namespaces, bridges, veth pairs and addresses over rtnetlink
