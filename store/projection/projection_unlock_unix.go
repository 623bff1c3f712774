//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package projection

import (
	"errors"
	"os"
	"syscall"
)

// unlockFile releases bbolt's flock on f. Closing f is not enough once bbolt has mapped
// it: the mapping keeps the open file, and with it the lock, alive.
func unlockFile(f *os.File) {
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// lockShared takes a shared flock on f without waiting, the lock bbolt's read-only opens
// take: it keeps out a writer (which needs it exclusive) and lives with readers. It
// reports false when a writer holds the file.
func lockShared(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
