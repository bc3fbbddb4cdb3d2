package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cluster is a one-node SLURM cluster on localhost that .ci/slurm.sh runs
// for one test, with the contrib scripts as Prolog, TaskProlog and Epilog.
type cluster struct {
	t        *testing.T
	dir      string // everything the cluster and its jobs write
	conf     string // SLURM_CONF for the clients
	src      string // the source the prologue mounts
	jobs     string // CACHEFS_JOB_BASE
	home     string // the user's working directory: scripts, outputs
	cachefs  string // the binary the scripts run
	uid, gid int
}

func requireSlurm(t *testing.T) {
	t.Helper()
	for _, c := range []string{"sbatch", "srun", "scancel", "squeue", "slurmctld", "slurmd", "munged", "setpriv", "fusermount3"} {
		if _, err := exec.LookPath(c); err == nil {
			continue
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("SLURM tests cannot run in CI: %s is missing (.ci/slurm.sh install installs Debian's slurm-wlm, slurmd, slurmctld and munge)", c)
		}
		t.Skipf("SLURM tests need %s (.ci/slurm.sh install)", c)
	}
	needRoot(t, "running slurmd")
}

// jobUser creates the test's job owner, who may mount as distributions
// let ordinary users.
func jobUser(t *testing.T) (uid, gid int) {
	t.Helper()
	_, cred := newUser(t, "slurm")
	userFUSE(t)
	return int(cred.Uid), int(cred.Gid)
}

// startCluster builds the source, the site configuration and the wrapped
// contrib scripts, and starts SLURM with extra slurm.conf lines.
func startCluster(t *testing.T, extra ...string) *cluster {
	return startClusterIn(t, "", extra...)
}

// startClusterIn is startCluster with everything under parent ("" for the
// default temporary directory).
func startClusterIn(t *testing.T, parent string, extra ...string) *cluster {
	t.Helper()
	requireSlurm(t)
	dir, err := os.MkdirTemp(parent, "cachefs-slurm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	c := &cluster{t: t, dir: dir, conf: filepath.Join(dir, "slurm", "slurm.conf"),
		src: filepath.Join(dir, "src"), jobs: filepath.Join(dir, "jobs"), home: filepath.Join(dir, "home"), cachefs: binary}
	c.uid, c.gid = jobUser(t)
	runTree(t, c.src)
	must(t, os.MkdirAll(c.home, 0o755))
	must(t, os.Chown(c.home, c.uid, c.gid))
	if r := newEnv(t).run("snapshot", c.src, "-o", filepath.Join(dir, "src.index")); r.code != 0 {
		t.Fatalf("cachefs snapshot exited %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if parent != "" {
		// The suite's binary lives under the default temporary directory,
		// which a job may not see (job_container/tmpfs).
		c.cachefs = filepath.Join(dir, "cachefs")
		b, err := os.ReadFile(binary)
		must(t, err)
		must(t, os.WriteFile(c.cachefs, b, 0o755))
	}
	c.installScripts()
	t.Cleanup(func() {
		b, _ := os.ReadFile(filepath.Join(dir, "scripts.log"))
		t.Logf("prologue and epilogue said:\n%s", b)
		if t.Failed() {
			// What SLURM saw is the only account of a job that went wrong
			// between the scripts.
			for _, f := range []string{"slurmctld.log", "slurmd.log"} {
				t.Logf("%s, last lines:\n%s", f, lastLines(filepath.Join(dir, "slurm", "log", f), 80))
			}
		}
	})
	args := append([]string{"start", filepath.Join(dir, "slurm"),
		"Prolog=" + filepath.Join(dir, "prolog"), "Epilog=" + filepath.Join(dir, "epilog"),
		"TaskProlog=" + filepath.Join(dir, "taskprolog")}, extra...)
	out, err := exec.Command("../.ci/slurm.sh", args...).CombinedOutput()
	t.Cleanup(func() {
		if out, err := exec.Command("../.ci/slurm.sh", "stop", filepath.Join(dir, "slurm")).CombinedOutput(); err != nil {
			t.Errorf("stopping SLURM: %v: %s", err, out)
		}
	})
	if err != nil {
		t.Fatalf(".ci/slurm.sh start: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// installScripts copies contrib/slurm where the job's user can read it
// (TaskProlog runs as that user) and wraps each script to name the site
// configuration, as slurmd's environment would.
func (c *cluster) installScripts() {
	t := c.t
	contrib := filepath.Join(c.dir, "contrib")
	must(t, os.MkdirAll(contrib, 0o755))
	for _, f := range []string{"common.sh", "prolog.sh", "taskprolog.sh", "epilog.sh"} {
		b, err := os.ReadFile(filepath.Join("..", "contrib", "slurm", f))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(contrib, f), b, 0o755))
	}
	site := filepath.Join(c.dir, "cachefs-slurm.conf")
	must(t, os.WriteFile(site, []byte(fmt.Sprintf(`CACHEFS=%s
CACHEFS_SOURCE=%s
CACHEFS_INDEX=%s
CACHEFS_JOB_BASE=%s
# A test may move the base for its next job.
[ -f "$CACHEFS_JOB_BASE.moved" ] && CACHEFS_JOB_BASE=$(cat "$CACHEFS_JOB_BASE.moved")
CACHEFS_ENV="EEGDASH_CACHE_DIR HF_HOME"
CACHEFS_STRICT=1
`, c.cachefs, c.src, filepath.Join(c.dir, "src.index"), c.jobs)), 0o644))
	for _, s := range []string{"prolog", "taskprolog", "epilog"} {
		// The root scripts' stderr, which slurmd drops, goes to a log the
		// test shows; TaskProlog runs as the user, who cannot write there.
		log := " 2>>" + filepath.Join(c.dir, "scripts.log")
		if s == "taskprolog" {
			log = ""
		}
		wrapper := fmt.Sprintf("#!/bin/sh\nCACHEFS_SLURM_CONF=%s exec %s/%s.sh \"$@\"%s\n", site, contrib, s, log)
		must(t, os.WriteFile(filepath.Join(c.dir, s), []byte(wrapper), 0o755))
	}
}

// sbatch submits script as the job's user and returns the job id; with
// wait, sbatch --wait returns when the job ends, with its exit status.
func (c *cluster) sbatch(script string, wait bool, opts ...string) (id string, code int) {
	c.t.Helper()
	path := filepath.Join(c.home, fmt.Sprintf("job-%d.sh", time.Now().UnixNano()))
	must(c.t, os.WriteFile(path, []byte("#!/bin/sh\n"+script), 0o755))
	args := []string{"--reuid=" + strconv.Itoa(c.uid), "--regid=" + strconv.Itoa(c.gid), "--init-groups",
		"sbatch", "--parsable", "-D", c.home, "-o", filepath.Join(c.home, "out-%j"), "-e", filepath.Join(c.home, "err-%j"),
		"--export=ALL,TMPDIR=" + filepath.Join(c.home)}
	if wait {
		args = append(args, "--wait")
	}
	args = append(append(args, opts...), path)
	ctx, cancel := context.WithTimeout(context.Background(), cmdDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, "setpriv", args...)
	cmd.Env = append(os.Environ(), "SLURM_CONF="+c.conf)
	cmd.Dir = c.home
	out, err := cmd.Output()
	code = exitCodeOf(c.t, err)
	id = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	if id == "" {
		c.t.Fatalf("sbatch: no job id (exit %d): %v", code, err)
	}
	return id, code
}

// output is what job id wrote to stdout and stderr.
func (c *cluster) output(id string) (string, string) {
	out, _ := os.ReadFile(filepath.Join(c.home, "out-"+id))
	errb, _ := os.ReadFile(filepath.Join(c.home, "err-"+id))
	return string(out), string(errb)
}

func (c *cluster) slurm(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdDeadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "SLURM_CONF="+c.conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("%v: %v: %s", args, err, out)
	}
	return string(out)
}

// waitJobGone waits until SLURM has finished job id, its epilogue included:
// the node is idle again only then.
func (c *cluster) waitJobGone(id string) {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		q := strings.TrimSpace(c.slurm("squeue", "-h", "-j", id, "-o", "%T"))
		node := strings.TrimSpace(c.slurm("sinfo", "-h", "-N", "-o", "%t"))
		if q == "" && node == "idle" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("job %s still %q, node %q", id, q, node)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkNothingLeft fails the test if a mount of the cluster's, one of its
// cachefs processes or a job directory outlived the job.
func (c *cluster) checkNothingLeft(what string) {
	c.t.Helper()
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, c.dir) {
			c.t.Errorf("%s left a mount behind: %s", what, l)
			f := strings.Fields(l)
			unix.Unmount(f[4], unix.MNT_DETACH)
		}
	}
	if left := c.daemons(); len(left) > 0 {
		c.t.Errorf("%s left cachefs processes running: %v", what, left)
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if ents, _ := os.ReadDir(c.jobs); len(ents) > 0 {
		c.t.Errorf("%s left job directories in %s: %v", what, c.jobs, ents)
	}
}

// daemons lists the cachefs processes of this cluster's jobs and scripts:
// those of the suite's binary or of the cluster's copy of it with an
// argument that names the cluster's directory, whose random name no other
// test or run shares (every mount names the source under it; the jobs'
// mountpoints and a moved job base carry it too). Other tests' and other
// runs' daemons are not the cluster's to count or kill.
func (c *cluster) daemons() []int {
	procs := processesRunning(binary)
	if c.cachefs != binary {
		procs = append(procs, processesRunning(c.cachefs)...)
	}
	mark := filepath.Base(c.dir)
	var out []int
	for _, pid := range procs {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		for _, arg := range strings.Split(string(b), "\x00") {
			if strings.Contains(arg, mark) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// TestSlurm runs jobs under proctrack/linuxproc, which tracks a job's
// processes by parentage, and a prologue that runs when the batch step
// starts.
func TestSlurm(t *testing.T) { slurmJobs(t, false) }

// TestSlurmCgroupContain runs the same jobs under proctrack/cgroup, which
// kills a step's whole cgroup when it ends, with PrologFlags=Contain: the
// prologue runs at allocation and the job's extern step holds what it
// leaves behind.
func TestSlurmCgroupContain(t *testing.T) {
	if _, err := os.Stat("/sys/fs/cgroup/freezer"); err != nil {
		if _, err2 := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err2 != nil {
			t.Fatalf("no cgroup hierarchy for proctrack/cgroup: %v", err)
		}
	}
	slurmJobs(t, true, "ProctrackType=proctrack/cgroup", "PrologFlags=Contain")
}

// slurmJobs runs the jobs; stepKills says whether the proctrack plugin
// kills everything a step started when the step ends.
func slurmJobs(t *testing.T, stepKills bool, conf ...string) {
	c := startCluster(t, conf...)
	want := sumTree(t, c.src)

	t.Run("MountInStep", func(t *testing.T) {
		c.t = t
		// What the documentation warns of: a daemon started by 'cachefs
		// mount' in an srun step lives as long as the proctrack plugin lets
		// it; the next mount or unmount cleans what is left.
		id, code := c.sbatch(fmt.Sprintf(`m=$TMPDIR/step-$SLURM_JOB_ID
srun -n1 %[1]s mount %[2]s "$m" || exit 1
if srun -n1 cat "$m"/sub-00/run-00.bin >/dev/null; then echo read-ok; else echo read-failed; fi
%[1]s unmount "$m"
`, binary, c.src), true)
		out, errb := c.output(id)
		if code != 0 {
			t.Fatalf("job %s exited %d\nstdout: %s\nstderr: %s", id, code, out, errb)
		}
		wantOut := "read-ok\ncachefs: unmounted"
		if stepKills {
			wantOut = "read-failed\ncachefs: cleaned"
		}
		if !strings.Contains(out, wantOut) {
			t.Errorf("job %s: want %q in its output:\n%s\nstderr: %s", id, wantOut, out, errb)
		}
		c.waitJobGone(id)
		c.checkNothingLeft("job " + id)
	})

	t.Run("PrologMountMultiStep", func(t *testing.T) {
		c.t = t
		// The prologue's mount serves the batch script and two srun steps,
		// and outlives each step.
		id, code := c.sbatch(`set -e
[ -n "$CACHEFS_MOUNTPOINT" ] && [ "$EEGDASH_CACHE_DIR" = "$CACHEFS_MOUNTPOINT" ] && [ "$HF_HOME" = "$CACHEFS_MOUNTPOINT" ]
awk -v p="$CACHEFS_MOUNTPOINT" '$5 == p { print "mount:", $0 }' /proc/self/mountinfo >&2
srun -n1 sh -c '`+checksums+`' sh "$CACHEFS_MOUNTPOINT" > step1
srun -n1 sh -c '`+checksums+`' sh "$CACHEFS_MOUNTPOINT" > step2
cat step1
cmp step1 step2
`, true)
		out, errb := c.output(id)
		if code != 0 {
			t.Fatalf("job %s exited %d\nstdout: %s\nstderr: %s", id, code, out, errb)
		}
		if out != want {
			t.Fatalf("checksums through the prologue's mount differ from the source's:\n%s\nwant:\n%s", out, want)
		}
		// Mounted by the job's user, not root: fusermount3 records it.
		if !strings.Contains(errb, "fuse.cachefs") || !strings.Contains(errb, fmt.Sprintf("user_id=%d", c.uid)) {
			t.Errorf("the prologue's mount is not the job user's: %s", errb)
		}
		c.waitJobGone(id)
		c.checkNothingLeft("job " + id)
	})

	t.Run("DeadMountEpilog", func(t *testing.T) {
		c.t = t
		// The prologue's daemon dies during the job (the OOM killer, say):
		// the epilogue cleans the dead mount and the node stays in service.
		id, code := c.sbatch(`pid=$(pgrep -u "$(id -u)" -f -- "--ready-fd=3")
[ -n "$pid" ] || exit 1
kill -KILL $pid
while kill -0 $pid 2>/dev/null; do sleep 0.05; done
ls "$CACHEFS_MOUNTPOINT" 2>&1 && exit 2
exit 0
`, true)
		out, errb := c.output(id)
		if code != 0 {
			t.Fatalf("job %s exited %d\nstdout: %s\nstderr: %s", id, code, out, errb)
		}
		if !strings.Contains(out, "not connected") {
			t.Errorf("the job did not see a dead mount: %s", out)
		}
		c.waitJobGone(id)
		c.checkNothingLeft("job " + id)
	})

	t.Run("CachefsRun", func(t *testing.T) {
		c.t = t
		id, code := c.sbatch(fmt.Sprintf(`exec %s run %s "$TMPDIR/mnt-$SLURM_JOB_ID" --env EEGDASH_CACHE_DIR -- sh -c '%s; exit 5' sh "$TMPDIR/mnt-$SLURM_JOB_ID"
`, binary, c.src, checksums), true)
		out, errb := c.output(id)
		if code != 5 {
			t.Fatalf("job %s exited %d, want the command's 5\nstdout: %s\nstderr: %s", id, code, out, errb)
		}
		if out != want {
			t.Fatalf("checksums through cachefs run differ from the source's:\n%s\nwant:\n%s", out, want)
		}
		c.waitJobGone(id)
		c.checkNothingLeft("job " + id)
	})

	// A job that keeps reading through both mounts until it is stopped.
	reader := fmt.Sprintf(`exec %s run %s "$TMPDIR/mnt-$SLURM_JOB_ID" -- sh -c '
echo started > "$TMPDIR/started-$SLURM_JOB_ID"
while :; do cat "$CACHEFS_MOUNTPOINT"/*/* "$EEGDASH_CACHE_DIR"/*/* >/dev/null; done'
`, binary, c.src)

	t.Run("Scancel", func(t *testing.T) {
		c.t = t
		id, _ := c.sbatch(reader, false)
		waitFile(t, filepath.Join(c.home, "started-"+id))
		c.slurm("scancel", id)
		c.waitJobGone(id)
		c.checkNothingLeft("cancelled job " + id)
	})

	t.Run("TimeLimit", func(t *testing.T) {
		c.t = t
		// A minute per run: once, under the plugin that kills by cgroup.
		if !stepKills {
			return
		}
		id, _ := c.sbatch(reader, true, "--time=1")
		out, errb := c.output(id)
		// Not sbatch --wait's status: the job counts as finished from the
		// moment its time is up, and sbatch may read its exit code (0)
		// before the killed script reports one.
		c.waitJobGone(id)
		if info := c.slurm("scontrol", "-o", "show", "job", id); !strings.Contains(info, "JobState=TIMEOUT") || strings.Contains(info, "ExitCode=0:0") {
			t.Fatalf("job %s hit its time limit, but SLURM says: %s\nstdout: %s\nstderr: %s", id, info, out, errb)
		}
		if !strings.Contains(errb, "TIME LIMIT") {
			t.Errorf("job %s ended without SLURM's time-limit message: %s", id, errb)
		}
		c.checkNothingLeft("job " + id + " killed at its time limit")
		// The caches the killed job used stay consistent: a new job reads
		// the source's bytes through both kinds of mount.
		id, code := c.sbatch(fmt.Sprintf(`set -e
sh -c '%s' sh "$CACHEFS_MOUNTPOINT" > prolog-sums
%s run %s "$TMPDIR/mnt-$SLURM_JOB_ID" -- sh -c '%s' sh "$TMPDIR/mnt-$SLURM_JOB_ID" > run-sums
cmp prolog-sums run-sums
cat run-sums
`, checksums, binary, c.src, checksums), true)
		out, errb = c.output(id)
		if code != 0 || out != want {
			t.Fatalf("job %s after the time limit: exit %d, checksums match %v\nstderr: %s", id, code, out == want, errb)
		}
		c.waitJobGone(id)
		c.checkNothingLeft("job " + id)
	})
}

// TestSlurmJobContainerTmpfs shows what job_container/tmpfs does to a
// prologue's mount: one under /tmp is hidden by the job's private /tmp,
// one elsewhere (the scripts' default base is under /var/tmp) is seen.
func TestSlurmJobContainerTmpfs(t *testing.T) {
	requireSlurm(t)
	parent, err := os.MkdirTemp("/var/tmp", "cachefs-jc-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(parent) })
	must(t, os.Chmod(parent, 0o755))
	// Everything under /var/tmp: a job sees none of the default /tmp.
	c := startClusterIn(t, parent, "ProctrackType=proctrack/cgroup", "PrologFlags=Contain",
		"JobContainerType=job_container/tmpfs")
	job := `if [ -n "$CACHEFS_MOUNTPOINT" ] && [ -r "$CACHEFS_MOUNTPOINT/sub-00/run-00.bin" ]; then echo visible; else echo hidden; fi
`
	for _, base := range []struct{ dir, want string }{
		{c.jobs, "visible"},
		{filepath.Join(os.TempDir(), filepath.Base(c.dir)+"-jobs"), "hidden"},
	} {
		must(t, os.WriteFile(c.jobs+".moved", []byte(base.dir), 0o644))
		if base.dir != c.jobs {
			t.Cleanup(func() { os.RemoveAll(base.dir) })
		}
		id, code := c.sbatch(job, true)
		out, errb := c.output(id)
		if code != 0 || strings.TrimSpace(out) != base.want {
			t.Errorf("prologue mount under %s: job %s exited %d and said %q, want %q\nstderr: %s", base.dir, id, code, out, base.want, errb)
		}
		c.waitJobGone(id)
		c.checkNothingLeft("job " + id)
		if ents, _ := os.ReadDir(base.dir); len(ents) > 0 {
			t.Errorf("job %s left %v in %s", id, ents, base.dir)
		}
	}
}

// lastLines is the end of a log file, at most n lines.
func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
