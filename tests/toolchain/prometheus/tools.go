//go:build tools

// Package tools pins Prometheus 3 and promtool, built by tests/toolchain/setup.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
