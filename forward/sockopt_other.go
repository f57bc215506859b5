//go:build !linux

package forward

import "time"

// setUserTimeoutFD does nothing: TCP_USER_TIMEOUT is Linux's. Elsewhere a
// peer that vanished is noticed by TCP keepalive only (Config.KeepAlive),
// which takes longer. Not an error, so that dialling still works.
func setUserTimeoutFD(uintptr, time.Duration) error { return nil }
