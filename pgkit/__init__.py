"""pgkit: policy-gradient methods and importance sampling in numpy."""
