//go:build tools

// Package tools pins rancher's local-path-provisioner at the version kind v0.30's node image
// ships (images/local-path-provisioner, v0.0.30), for the kind node image.
package tools

import _ "github.com/rancher/local-path-provisioner"
