package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long a server has to exit after SIGTERM before it is
// killed.
const stopGrace = 5 * time.Second

// proc is a server process this program started. Its output goes to a log
// file in the run's directory, shown when it fails to start.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProc starts bin with args, its output in dir/name.log.
func startProc(dir, name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop ends p: SIGTERM, then SIGKILL after stopGrace.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the last lines of p's log.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	b = bytes.TrimSpace(b)
	lines := strings.Split(string(b), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// waitReady calls check every 50 ms until it succeeds, p exits, ctx ends
// or limit passes.
func (p *proc) waitReady(ctx context.Context, limit time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v); its log:\n%s", p.name, p.err, p.tail())
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s not ready after %s (%v); its log:\n%s", p.name, limit, last, p.tail())
			}
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// need finds bin on PATH, or says which Debian package provides it.
func need(bin, pkg, system string) (string, error) {
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("%s not found: install it (apt-get install %s) or leave %s out of -systems", bin, pkg, system)
	}
	return p, nil
}

// zkJar is where Debian's zookeeper package puts the server; its manifest
// names the jars it needs.
const zkJar = "/usr/share/java/zookeeper.jar"

// startRedis starts redis-server without persistence.
func startRedis(dir string) (*proc, string, error) {
	bin, err := need("redis-server", "redis-server", "redis")
	if err != nil {
		return nil, "", err
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	p, err := startProc(dir, "redis", bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", dir)
	return p, fmt.Sprintf("127.0.0.1:%d", port), err
}

// startEtcd starts a one-member etcd, its log in dir and its data in data.
func startEtcd(dir, data string) (*proc, string, error) {
	bin, err := need("etcd", "etcd-server", "etcd")
	if err != nil {
		return nil, "", err
	}
	cport, err := freePort()
	if err != nil {
		return nil, "", err
	}
	pport, err := freePort()
	if err != nil {
		return nil, "", err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", cport)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
	p, err := startProc(dir, "etcd", bin,
		"--name", "lockcmp", "--data-dir", filepath.Join(data, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "lockcmp="+peer, "--initial-cluster-state", "new",
		"--logger", "zap", "--log-level", "warn")
	return p, fmt.Sprintf("127.0.0.1:%d", cport), err
}

// startZooKeeper starts a standalone ZooKeeper with its own zoo.cfg, its
// log in dir and its data in data: the JVM on QuorumPeerMain, as Debian's
// zkServer.sh would but without its configuration directory.
func startZooKeeper(dir, data string) (*proc, string, error) {
	java, err := need("java", "zookeeper", "zookeeper")
	if err != nil {
		return nil, "", err
	}
	if _, err := os.Stat(zkJar); err != nil {
		return nil, "", fmt.Errorf("%s not found: install it (apt-get install zookeeper) or leave zookeeper out of -systems", zkJar)
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	zdir := filepath.Join(data, "zookeeper")
	if err := os.MkdirAll(zdir, 0o755); err != nil {
		return nil, "", err
	}
	cfg := filepath.Join(zdir, "zoo.cfg")
	conf := fmt.Sprintf("tickTime=2000\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n"+
		"maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=ruok\n", zdir, port)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, "", err
	}
	cp := zkJar
	// slf4j-simple (a dependency of Debian's slf4j) logs to the log
	// file, which is shown if ZooKeeper does not start; without a
	// binding slf4j logs nothing.
	if _, err := os.Stat("/usr/share/java/slf4j-simple.jar"); err == nil {
		cp += ":/usr/share/java/slf4j-simple.jar"
	}
	p, err := startProc(dir, "zookeeper", java, "-Xmx512m", "-XX:+UseSerialGC", "-cp", cp,
		"-Dzookeeper.jmx.log4j.disable=true", "-Djava.net.preferIPv4Stack=true",
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg)
	return p, fmt.Sprintf("127.0.0.1:%d", port), err
}

// zkServing asks the ZooKeeper server at addr "ruok"; it answers "imok"
// once it serves.
func zkServing(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte("ruok")); err != nil {
		return err
	}
	b, _ := io.ReadAll(io.LimitReader(c, 16))
	if string(b) != "imok" {
		return fmt.Errorf("ruok answered %q", b)
	}
	return nil
}

// startLockerd starts the lockerd binary bin with the keys bench and side,
// both of a limit no run reaches, and extra flags. A fresh lockerd has
// given no lease before, so when bin has --lock-grace and extra does not
// set it, it starts without a restart grace period (--lock-grace=0).
func startLockerd(dir, bin string, extra []string) (*proc, string, error) {
	help, _ := exec.Command(bin, "--help").CombinedOutput()
	if bytes.Contains(help, []byte("--lock-grace")) && !slices.ContainsFunc(extra, func(f string) bool {
		return strings.HasPrefix(f, "--lock-grace")
	}) {
		extra = append(slices.Clone(extra), "--lock-grace=0")
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	ep := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	args := append([]string{"--id", "lockcmp", "--bind", ep,
		"--key", "bench=1000000000/1s", "--key", "side=1000000000/1s",
		"--metrics-addr", "", "--log-level", "warn"}, extra...)
	p, err := startProc(dir, "lockerd", bin, args...)
	return p, ep, err
}

// buildLockerd builds cmd/lockerd of the repository that holds the
// working directory into dir.
func buildLockerd(ctx context.Context, dir string) (string, error) {
	return buildRepo(ctx, "./cmd/lockerd", filepath.Join(dir, "lockerd"))
}

// buildRepo builds the package pkg of the repository that holds the
// working directory into out.
func buildRepo(ctx context.Context, pkg, out string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s in %s: %v\n%s", pkg, root, err, b)
	}
	return out, nil
}

// repoRoot is the nearest directory above the working directory whose
// go.mod is lockerd's module.
func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/lockerd/lockerd\n")) {
			return d, nil
		}
		up := filepath.Dir(d)
		if up == d {
			return "", errors.New("not inside the lockerd repository: pass -lockerd and -echo binaries")
		}
		d = up
	}
}
