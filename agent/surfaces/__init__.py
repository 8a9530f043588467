"""What a user runs besides the loop: the terminal chat, the worker, the scheduler, the
report and the demo. Surfaces may import the loop; the loop never imports a surface."""
