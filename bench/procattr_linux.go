package main

import "syscall"

// childProcAttr makes the kernel kill a server this process started when this process
// dies, even by SIGKILL (the parent kills a phase that way when it is interrupted), so
// no nats-server outlives its phase.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
