// Loopback tests of the org run against two in-process emulators (filled in by the next commit).
