"""Linux boards over SSH: the descriptor's fields, the OpenSSH transport, and the runner pushed to the board."""
