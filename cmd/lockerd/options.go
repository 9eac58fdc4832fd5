package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lockerd/lockerd/locker"
	"github.com/lockerd/lockerd/locker/curve"
	"github.com/lockerd/lockerd/metrics"
	"github.com/lockerd/lockerd/peer"
	"github.com/spf13/pflag"
)

// options is everything the flags and the config file say.
type options struct {
	binds      []string
	limit      int64
	window     time.Duration
	keySpecs   []string
	configFile string
	maxWait    time.Duration
	maxWaiters int
	maxKeys    int
	id         string
	logLevel   string
	logFormat  string
	version    bool

	metricsAddr  string
	curveSecret  string
	curveClients string

	publish    string
	peers      []string
	federation string
	heartbeat  time.Duration

	locks lockOptions // lockflags.go

	// Derived by check.
	keys        []locker.KeyConfig
	secretKey   string
	allowedKeys []string
}

func newFlagSet(o *options, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet("lockerd", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringArrayVarP(&o.binds, "bind", "b", []string{locker.DefaultEndpoint}, "ZeroMQ endpoint to answer requests on (repeatable)")
	fs.Int64VarP(&o.limit, "limit", "n", locker.DefaultLimit, "tokens per window of the key \"default\"")
	fs.DurationVarP(&o.window, "window", "w", locker.DefaultWindow, "window of the key \"default\"")
	fs.StringArrayVar(&o.keySpecs, "key", nil, "a key as NAME=LIMIT/WINDOW[/ALG[:BURST]][+...], ALG fixed, sliding or gcra, e.g. api=5/800ms, api=10/1s/gcra:1, github=10/1s+5000/1h; a NAME ending in * is a template, e.g. 'tenant:*=100/1m' (repeatable)")
	fs.StringVarP(&o.configFile, "config", "c", "", "read flags from FILE: one \"name = value\" per line, # comments")
	fs.DurationVar(&o.maxWait, "max-wait", locker.DefaultMaxWait, "longest a wait request is held")
	fs.IntVar(&o.maxWaiters, "max-waiters", locker.DefaultMaxWaiters, "wait requests held per key; beyond, sorry at once")
	fs.IntVar(&o.maxKeys, "max-keys", locker.DefaultMaxKeys, "keys made on demand from templates that live at once; beyond, a request for a new one gets an error")
	fs.StringVar(&o.id, "id", "", "server id in pong and status (default host name and port)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&o.metricsAddr, "metrics-addr", metrics.DefaultAddr, "HOST:PORT for /metrics, /healthz and /readyz; empty disables")
	fs.StringVar(&o.curveSecret, "curve-secret", "", "turn CURVE on with the server's secret key FILE (see lockerctl keygen)")
	fs.StringVar(&o.curveClients, "curve-clients", "", "FILE of client public keys, one per line, or DIR of *.pub files: the only clients let in")
	fs.StringVar(&o.publish, "publish", "", "federation: ZeroMQ endpoint to publish this server's counts on, spelled as the peers list it")
	fs.StringArrayVar(&o.peers, "peer", nil, "federation: publish endpoint of a peer (repeatable; the same list may include this server's own)")
	fs.StringVar(&o.federation, "federation", "strict", "federation mode: strict (never above the limit) or shared (split by demand; holds the limit while members agree on who is up)")
	fs.DurationVar(&o.heartbeat, "heartbeat", peer.DefaultHeartbeat, "federation heartbeat interval; a peer silent for 3 is down")
	addLockFlags(fs, &o.locks)
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: lockerd [flags]\n\nlockerd answers go or sorry from rate-limit counters (fixed, sliding or gcra) over ZeroMQ.\n\nFlags:\n%s\nEvery flag can also be set as LOCKER_ and its name, e.g. LOCKER_MAX_WAIT=10s.\n", fs.FlagUsages())
	}
	return fs
}

// parseOptions reads args, the LOCKER_* environment and, if --config
// names one, the config file. The command line wins over the environment,
// and both win over the file; a repeatable flag set on the command line or
// in the environment replaces the file's values.
func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := newFlagSet(o, stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnv(fs, os.LookupEnv); err != nil {
		return nil, err
	}
	if o.configFile != "" {
		if err := applyConfigFile(fs, o.configFile); err != nil {
			return nil, err
		}
	}
	if o.version {
		return o, nil
	}
	if err := o.check(fs); err != nil {
		return nil, err
	}
	return o, nil
}

// envPrefix starts the name of every environment variable lockerd reads.
const envPrefix = "LOCKER_"

// envName is the environment variable for the flag name: LOCKER_ and the
// name in upper case with _ for -, so --max-wait is LOCKER_MAX_WAIT.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets, from the environment, every flag not set on the command
// line. A repeatable flag takes a comma-separated list. Set but empty
// counts as set: LOCKER_METRICS_ADDR= turns the metrics endpoint off.
// Variables that name no flag are ignored, since LOCKER_SERVER belongs to
// lockerctl.
func applyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" || f.Name == "version" {
			return
		}
		env := envName(f.Name)
		v, ok := lookup(env)
		if !ok {
			return
		}
		values := []string{v}
		if _, repeatable := f.Value.(pflag.SliceValue); repeatable {
			values = strings.Split(v, ",")
		}
		for _, v := range values {
			if e := fs.Set(f.Name, strings.TrimSpace(v)); e != nil {
				err = fmt.Errorf("%s: %v", env, e)
				return
			}
		}
	})
	return err
}

// applyConfigFile sets, from path, every flag not set on the command line
// or in the environment.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	entries, err := readConfigFile(path)
	if err != nil {
		return err
	}
	if err := checkEntries(fs, path, entries); err != nil {
		return err
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { onCommandLine[f.Name] = true })
	cleared := map[string]bool{}
	for _, e := range entries {
		if onCommandLine[e.name] {
			continue
		}
		f := fs.Lookup(e.name)
		if sv, ok := f.Value.(pflag.SliceValue); ok && !cleared[e.name] {
			sv.Replace(nil) // the file's list replaces the default
			cleared[e.name] = true
		}
		if err := fs.Set(e.name, e.value); err != nil {
			return fmt.Errorf("%s:%d: %s: %v", path, e.line, e.name, err)
		}
	}
	return nil
}

// checkEntries refuses a config file that names an unknown setting, one
// that only the command line may set, or the same single-valued setting
// twice: which of two values was meant cannot be known, so neither is
// used.
func checkEntries(fs *pflag.FlagSet, path string, entries []configEntry) error {
	firstAt := map[string]int{}
	for _, e := range entries {
		f := fs.Lookup(e.name)
		switch {
		case f == nil:
			return fmt.Errorf("%s:%d: unknown setting %q", path, e.line, clip(e.name))
		case e.name == "config" || e.name == "version" || e.name == "help":
			return fmt.Errorf("%s:%d: %q cannot be set in a config file", path, e.line, e.name)
		}
		if _, repeatable := f.Value.(pflag.SliceValue); repeatable {
			continue
		}
		if at, ok := firstAt[e.name]; ok {
			return fmt.Errorf("%s:%d: %q is already set on line %d; only bind, key and peer may repeat", path, e.line, e.name, at)
		}
		firstAt[e.name] = e.line
	}
	return nil
}

type configEntry struct {
	line        int
	name, value string
}

// maxConfigSize bounds a config file. lockerd reads a file whole or
// refuses it: a file cut short would start with keys missing.
const maxConfigSize = 64 << 20

// readConfigFile reads "name = value" lines; blank lines and lines
// starting with # are skipped, and so is a UTF-8 byte order mark at the
// start of the file. Lines have no length limit of their own.
func readConfigFile(path string) ([]configEntry, error) {
	b, err := readFileMax(path, maxConfigSize)
	if err != nil {
		return nil, err
	}
	text := strings.TrimPrefix(string(b), "\ufeff")
	var out []configEntry
	for i, line := range strings.Split(text, "\n") {
		e, ok, err := parseConfigLine(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, i+1, err)
		}
		if ok {
			e.line = i + 1
			out = append(out, e)
		}
	}
	return out, nil
}

// readFileMax returns the contents of the file path, or an error naming
// the limit if it holds more than limit bytes.
func readFileMax(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d MiB, the limit of a config file", path, limit>>20)
	}
	return b, nil
}

// parseConfigLine parses one line of a config file. It reports false for
// a blank or comment line.
func parseConfigLine(line string) (configEntry, bool, error) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return configEntry{}, false, nil
	}
	name, value, ok := strings.Cut(line, "=")
	name, value = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), "--")), strings.TrimSpace(value)
	if !ok || name == "" {
		return configEntry{}, false, fmt.Errorf("want \"name = value\", got %q", clip(line))
	}
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		uq, err := strconv.Unquote(value)
		if err != nil {
			return configEntry{}, false, fmt.Errorf("bad quoted value %s", clip(value))
		}
		value = uq
	}
	return configEntry{name: name, value: value}, true, nil
}

// clip shortens s for an error message: a config line can be megabytes
// long.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// check validates o and derives its keys.
func (o *options) check(fs *pflag.FlagSet) error {
	if err := o.checkListen(); err != nil {
		return err
	}
	if err := o.checkBounds(); err != nil {
		return err
	}
	if err := o.checkFederation(); err != nil {
		return err
	}
	if err := o.locks.check(fs); err != nil {
		return err
	}
	keys, err := o.keyConfigs(fs)
	if err != nil {
		return err
	}
	o.keys = keys
	if err := o.loadCurve(); err != nil {
		return err
	}
	if o.id == "" {
		o.id = defaultID(o.binds[0])
	}
	return nil
}

// checkListen validates the endpoints lockerd listens on: --bind and
// --metrics-addr.
func (o *options) checkListen() error {
	if len(o.binds) == 0 {
		return errors.New("no --bind endpoint")
	}
	for _, b := range o.binds {
		if err := checkEndpoint(b, useBind); err != nil {
			return fmt.Errorf("--bind %q: %v", b, err)
		}
	}
	if o.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(o.metricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr %q: want HOST:PORT, like 127.0.0.1:9777", o.metricsAddr)
		}
	}
	return nil
}

// checkBounds validates the bounds on waiting and on keys, and the log
// flags.
func (o *options) checkBounds() error {
	if o.maxWait < 0 {
		return fmt.Errorf("--max-wait %s is negative", o.maxWait)
	}
	if o.maxWaiters < 1 {
		return fmt.Errorf("--max-waiters %d: want at least 1", o.maxWaiters)
	}
	if o.maxKeys < 1 {
		return fmt.Errorf("--max-keys %d: want at least 1", o.maxKeys)
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		return err
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", o.logFormat)
	}
	return nil
}

// checkFederation validates the federation flags.
func (o *options) checkFederation() error {
	if _, err := peer.ParseMode(o.federation); err != nil {
		return fmt.Errorf("--federation %q: want shared or strict", o.federation)
	}
	if o.heartbeat <= 0 {
		return fmt.Errorf("--heartbeat %s: want a positive duration", o.heartbeat)
	}
	if o.publish == "" {
		if len(o.peers) > 0 {
			return errors.New("--peer needs --publish")
		}
		return nil
	}
	if err := checkEndpoint(o.publish, usePublish); err != nil {
		return fmt.Errorf("--publish %q: %v", o.publish, err)
	}
	for _, ep := range o.peers {
		if ep == o.publish {
			continue // this server's own, in a list shared by all members
		}
		if err := checkEndpoint(ep, useConnect); err != nil {
			return fmt.Errorf("--peer %q: %v", ep, err)
		}
	}
	if o.federation == "strict" && strings.Contains(o.publish, "*") {
		return fmt.Errorf("--publish %q: strict mode needs the endpoint spelled as the peers list it, without *", o.publish)
	}
	return nil
}

// keyConfigs builds the keys from --key and, for the key "default", from
// --limit and --window. A --key default=... together with --limit or
// --window is an error: the two would disagree.
func (o *options) keyConfigs(fs *pflag.FlagSet) ([]locker.KeyConfig, error) {
	var keys []locker.KeyConfig
	seen := map[string]bool{}
	for _, spec := range o.keySpecs {
		k, err := locker.ParseKeySpec(spec)
		if err != nil {
			return nil, fmt.Errorf("--key: %w", err)
		}
		if seen[k.Name] {
			return nil, fmt.Errorf("--key %s: key %q given twice", spec, k.Name)
		}
		seen[k.Name] = true
		keys = append(keys, k)
	}
	def := locker.KeyConfig{Name: locker.DefaultKey, Limit: o.limit, Window: o.window}
	if seen[locker.DefaultKey] {
		if fs.Changed("limit") || fs.Changed("window") {
			return nil, errors.New("--key default=... and --limit/--window both set the key default: use one")
		}
		return keys, nil
	}
	if err := def.Validate(); err != nil {
		if o.limit < 1 || o.limit > locker.MaxLimit {
			return nil, fmt.Errorf("--limit %d: want an integer from 1 to %d", o.limit, locker.MaxLimit)
		}
		return nil, fmt.Errorf("--window %s: want a whole number of milliseconds from %s to %s", o.window, locker.MinWindow, locker.MaxWindow)
	}
	return append(keys, def), nil
}

// loadCurve reads the CURVE secret key and allow list, if any.
func (o *options) loadCurve() error {
	switch {
	case o.curveSecret == "" && o.curveClients == "":
		return nil
	case o.curveSecret == "":
		return errors.New("--curve-clients needs --curve-secret")
	case o.curveClients == "":
		return errors.New("--curve-secret needs --curve-clients: without an allow list nobody could connect")
	}
	if err := curve.SecretKeyFileMode(o.curveSecret); err != nil {
		return fmt.Errorf("--curve-secret: %w", err)
	}
	sec, err := curve.ReadKey(o.curveSecret)
	if err != nil {
		return fmt.Errorf("--curve-secret: %w", err)
	}
	allowed, err := curve.ReadAllowList(o.curveClients)
	if err != nil {
		return fmt.Errorf("--curve-clients: %w", err)
	}
	o.secretKey, o.allowedKeys = sec, allowed
	return nil
}

// defaultID is the host name and the port of the first endpoint.
func defaultID(endpoint string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "lockerd"
	}
	if i := strings.LastIndexByte(endpoint, ':'); i >= 0 {
		if port := endpoint[i+1:]; port != "" && strings.Trim(port, "0123456789") == "" {
			return host + ":" + port
		}
	}
	return host
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func (o *options) logger(w io.Writer) *slog.Logger {
	l, _ := parseLevel(o.logLevel)
	ho := &slog.HandlerOptions{Level: l}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}
