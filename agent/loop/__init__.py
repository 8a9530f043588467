"""The self-evolution loop: the graph, its phases (acquire, refine, update, evaluate), the
gate's statistics and the runtime the nodes share. Imports nothing from the surfaces."""
