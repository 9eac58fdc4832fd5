package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// configuredKeys starts lockerd with o.keys keys from a config file and
// measures its start, its RSS, a /metrics scrape and a status request.
func configuredKeys(ctx context.Context, o options, t *table) error {
	logf(o, "configured keys: %d", o.keys)
	args := make([]string, 0, o.keys+2)
	for i := 0; i < o.keys; i++ {
		args = append(args, "--key=k"+strconv.Itoa(i)+"=1000/1s")
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	maddr := "127.0.0.1:" + strconv.Itoa(port)
	// A twin with one key, for the RSS of lockerd itself.
	one, err := startLockerd(o, "onekey", "--key", "k0=1000/1s", "--metrics-addr", "127.0.0.1:0")
	if err != nil {
		return err
	}
	err = takeAll(one.ep, 1)
	base, rerr := one.rss()
	one.stop()
	if err = errors.Join(err, rerr); err != nil {
		return err
	}
	p, err := startLockerd(o, "keys", append(args, "--metrics-addr", maddr)...)
	if err != nil {
		return err
	}
	defer p.stop()
	// Touch every key once, so that the figures are those of a server
	// whose keys have all been used.
	if err := takeAll(p.ep, o.keys); err != nil {
		return err
	}
	rss, err := p.rss()
	if err != nil {
		return err
	}
	mt, msize, err := scrape(ctx, "http://"+maddr+"/metrics")
	if err != nil {
		return err
	}
	t0 := time.Now()
	st, err := request(p.ep, "status", 30*time.Second)
	if err != nil {
		return err
	}
	stt := time.Since(t0)
	how := fmt.Sprintf("lockerd with %d flags `--key=kN=1000/1s`, each key taken once", o.keys)
	t.row(fmt.Sprintf("%d configured keys: start", o.keys), fmt.Sprintf("%.2f s", p.started.Seconds()), "-",
		how+"; from exec to its first pong")
	t.row(fmt.Sprintf("%d configured keys: RSS", o.keys), fmt.Sprintf("%s, %.0f bytes per key", mib(float64(rss)), float64(rss-base)/float64(o.keys)), "-",
		how+fmt.Sprintf("; VmRSS, and per key over a twin with one key (%s)", mib(float64(base))))
	t.row(fmt.Sprintf("%d configured keys: /metrics", o.keys), fmt.Sprintf("%s in %.0f ms", mib(float64(msize)), mt.Seconds()*1e3), "-",
		how+"; one GET /metrics, time to the last byte. Every key has its own series (limit, window, granted, waiters): the size grows with the number of keys, and lockerd has no knob to leave them out")
	t.row(fmt.Sprintf("%d configured keys: status", o.keys), fmt.Sprintf("%s in %.0f ms", mib(float64(len(st))), stt.Seconds()*1e3), "-",
		how+"; one `status` request on a new REQ socket, time to the reply")
	return nil
}

// writeKeys writes a lockerd config file with n keys PREFIXi=spec.
func writeKeys(path string, n int, prefix, spec string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "key = %s%d=%s\n", prefix, i, spec)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// takeAll takes one token of each key kN, pipelined over one
// DEALER socket.
func takeAll(ep string, keys int) error {
	return pipelined(ep, keys, 256, func(i int) string { return "take k" + strconv.Itoa(i) + " 1" })
}

func scrape(ctx context.Context, url string) (time.Duration, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return time.Since(t0), n, nil
}
