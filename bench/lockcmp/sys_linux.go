package main

import "syscall"

// procAttr makes the kernel kill a server this program started if the
// program dies without stopping it (SIGKILL, a crash). The signal follows
// the thread that started the server, and Go ends a thread only when a
// goroutine locked to it exits: nothing in this program locks one.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// onTmpfs reports whether dir is on a tmpfs (memory, where fsync is free).
func onTmpfs(dir string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && st.Type == 0x01021994
}
