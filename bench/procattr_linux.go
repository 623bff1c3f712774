package main

import "syscall"

// childProcAttr makes the kernel kill a server this process started when this process
// dies, even by SIGKILL (the parent kills a phase that way when it is interrupted), so
// no nats-server outlives its phase.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// freeBytes is the space an unprivileged process may still write on the file system
// holding dir; ok is false where that cannot be known.
func freeBytes(dir string) (free int64, ok bool, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false, err
	}
	return int64(st.Bavail) * int64(st.Bsize), true, nil
}
