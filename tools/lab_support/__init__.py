"""The lab: QEMU guests sharing disk images, each with its own kernel and an
i6300esb hardware watchdog (docs/LAB.md).  ``tools/lab`` is the command;
the modules here are what it and ``tests/lab`` use."""
