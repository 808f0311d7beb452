"""Many runs: arms, sweeps (local, Ray), merges, the teacher judge and the demo."""
