"""`python -m cli ARGS` is `domainbench ARGS` (torchrun and accelerate launch modules, not scripts)."""

from cli.main import main

main()
