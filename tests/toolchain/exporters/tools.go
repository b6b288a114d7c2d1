//go:build tools

// Package tools pins the Prometheus exporters whose images tests/devkit/images.py builds,
// at the versions the JewelryMonitoring CR's default images name.
package tools

import (
	_ "github.com/oliver006/redis_exporter"
	_ "github.com/prometheus-community/postgres_exporter/cmd/postgres_exporter"
	_ "github.com/prometheus/node_exporter"
)
