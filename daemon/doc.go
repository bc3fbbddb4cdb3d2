// Package daemon serves one cachefs mount: it checks the source and the
// mountpoint, makes the cache directory, takes the snapshot (a walk of the
// source or an index), opens the block cache, mounts the FUSE filesystem
// with its prefetcher (under the cache directory, with a writable view
// stacked at the mountpoint when asked), answers the control socket, and
// serves until the mount goes away or its context ends. Around that: the
// launcher's side (Launch starts a daemon in the background and follows
// its readiness pipe, PipeReporter is the daemon's end), the process's
// signal policy (Signals), the settings a user gives turned into a Config
// (Settings), and the walks of `cachefs snapshot` (IndexJob).
//
// # Configuration
//
// Config holds parsed, typed values with every path absolute and resolved.
// Settings.Config finds every usage error (of kind ErrUsage) before
// anything is created; the CLI binds its flags to Settings and hands the
// daemon the Config. The daemon reads no flag and no environment
// variable; it logs to the zerolog.Logger it is given, and to the log file
// through the logger LogTo builds, once the cache directory exists.
//
// # Errors
//
// Run's errors are *Error values whose Kind is one of the sentinels below
// (ErrSource, ErrMountpoint, ...); the CLI maps each kind to an exit code
// in one table. An error of no kind is an internal one.
//
// # Order of work
//
// Every check that can refuse the mount runs before anything is walked or
// mounted, and the directories the daemon writes in are made or adopted
// (package privdir) before the log file is opened in one of them: a
// planted directory fails the mount instead of receiving its files.
package daemon
