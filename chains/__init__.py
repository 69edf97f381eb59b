"""Chain adapters (bitcoin/, ethereum/): each implements the node's chain port (node.ports)."""
