//go:build !linux

package main

import "syscall"

// childProcAttr: outside Linux there is no parent-death signal; the phase's own close
// kills its servers on every return.
func childProcAttr() *syscall.SysProcAttr { return nil }

// freeBytes: outside Linux the free space is not read; the scale run does not check it.
func freeBytes(string) (int64, bool, error) { return 0, false, nil }
