package benchmain

import (
	"os"
	"runtime/pprof"
)

// CPUProfile starts a CPU profile written to path, or does nothing when
// path is empty. The returned function stops the profile and closes the
// file; it is never nil when err is nil.
func CPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	pprof.StartCPUProfile(f)
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
