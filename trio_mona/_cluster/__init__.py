"""What joins one runtime to the other processes of its cluster, through Redis
(docs/scaling.rst)."""
