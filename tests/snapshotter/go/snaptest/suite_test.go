// SPDX-License-Identifier: Apache-2.0

package snaptest

import (
	"context"
	"syscall"
	"testing"

	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/testsuite"
)

// containerd's own snapshotter conformance suite, through the proxy client
// containerd uses for proxy plugins: one snapshotter process per test.
func TestSnapshotterSuite(t *testing.T) {
	testsuite.SnapshotterSuite(t, "lazypull",
		func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
			d := startDaemon(t, root)
			return d.snapshotter(), func() error {
				err := d.stop(syscall.SIGTERM)
				if err != nil {
					t.Logf("daemon log:\n%s", d.logText())
				}
				return err
			}, nil
		})
}
