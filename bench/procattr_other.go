//go:build !linux

package main

import "syscall"

// childProcAttr: outside Linux there is no parent-death signal; the phase's own close
// kills its servers on every return.
func childProcAttr() *syscall.SysProcAttr { return nil }
