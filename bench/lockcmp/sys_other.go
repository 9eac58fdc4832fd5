//go:build !linux

package main

import "syscall"

// procAttr: only Linux can tie a child's life to this program's; elsewhere
// the servers are stopped by the program's own cleanup.
func procAttr() *syscall.SysProcAttr { return nil }

// onTmpfs is not known outside Linux.
func onTmpfs(string) bool { return false }
