//go:build !linux

package forward

import (
	"net"
	"time"
)

// Elsewhere than Linux, keepalive is left to net, which sets it on every
// accepted and dialed conn through the portable KeepAliveConfig (whether
// accepted sockets inherit the listener's options differs by system).
// On Windows before 10 version 1709 the probe count cannot be set; net
// then keeps the system's (10).

// keepAliveConfig is Config.KeepAlive as the idle time and the probe
// interval, 9 probes, as on Linux; negative turns keepalive off.
func (c *Config) keepAliveConfig() (time.Duration, net.KeepAliveConfig) {
	if c.KeepAlive < 0 {
		return -1, net.KeepAliveConfig{}
	}
	return c.KeepAlive, net.KeepAliveConfig{Enable: true, Idle: c.KeepAlive, Interval: c.KeepAlive, Count: 9}
}

func (c *Config) listenConfig() *net.ListenConfig {
	ka, kc := c.keepAliveConfig()
	return &net.ListenConfig{KeepAlive: ka, KeepAliveConfig: kc}
}

// dialer has no TCP_USER_TIMEOUT to set here (setUserTimeoutFD).
func (c *Config) dialer() *net.Dialer {
	ka, kc := c.keepAliveConfig()
	return &net.Dialer{KeepAlive: ka, KeepAliveConfig: kc}
}

// setUserTimeoutFD does nothing: TCP_USER_TIMEOUT is Linux's. Elsewhere a
// peer that vanished is noticed by TCP keepalive only (Config.KeepAlive),
// which takes longer. Not an error, so that dialling still works.
func setUserTimeoutFD(uintptr, time.Duration) error { return nil }
