//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package store

import (
	"os"
	"syscall"
)

// unlockFile releases bbolt's flock on f. Closing f is not enough once bbolt has mapped
// it: the mapping keeps the open file, and with it the lock, alive.
func unlockFile(f *os.File) {
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
