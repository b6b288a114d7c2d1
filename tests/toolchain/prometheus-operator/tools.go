//go:build tools

// Package tools pins prometheus-operator and its config reloader, built by tests/toolchain/setup.
package tools

import (
	_ "github.com/prometheus-operator/prometheus-operator/cmd/operator"
	_ "github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader"
)
