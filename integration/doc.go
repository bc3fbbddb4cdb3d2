// Package integration holds cachefs's black-box tests: they build the real
// binary, mount it in a subprocess over real directories or over the
// slow-source fixture (integration/slowfs), and judge only what a user could
// see through the mountpoint, the exit codes and the output.
//
// Invariants the suite keeps: every test unmounts what it mounts and ends
// the daemons it started, by pid, even when it fails; no test waits by
// sleeping for a mount (the mount command returns only once serving, and
// teardown polls /proc); in CI (CI=true) a missing /dev/fuse fails the suite
// instead of skipping it.
package integration
