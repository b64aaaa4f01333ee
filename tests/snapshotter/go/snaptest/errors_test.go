// SPDX-License-Identifier: Apache-2.0

package snaptest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/snapshots"
	"github.com/gogo/protobuf/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const svc = "/containerd.services.snapshots.v1.Snapshots/"

// rawCodec sends and receives bytes as they are, to reach the server's
// framing and decoding with requests no generated client would build.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                               { return "proto" }

func rawCall(ctx context.Context, conn *grpc.ClientConn, method string, req []byte) ([]byte, error) {
	var resp []byte
	err := conn.Invoke(ctx, svc+method, &req, &resp, grpc.ForceCodec(rawCodec{}))
	return resp, err
}

type errCase struct {
	name string
	code codes.Code
	is   func(error) bool // errdefs class after FromGRPC, as containerd sees it
	call func(ctx context.Context, c snapshotsapi.SnapshotsClient) error
}

func prepare(key, parent string, labels map[string]string) func(context.Context, snapshotsapi.SnapshotsClient) error {
	return func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
		_, err := c.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Key: key, Parent: parent, Labels: labels})
		return err
	}
}

func isUnknown(err error) bool { return errors.Is(err, errdefs.ErrUnknown) }

// Every error case of containerd's snapshotter semantics, straight on the
// socket: the gRPC code, and the errdefs class containerd derives from it.
func TestErrorCodes(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	defer d.mustStop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := d.client()

	// fixtures: base (committed) <- act (active), view1 (view of base)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(prepare("base-a", "", nil)(ctx, c))
	_, err := c.Commit(ctx, &snapshotsapi.CommitSnapshotRequest{Name: "base", Key: "base-a"})
	must(err)
	must(prepare("act", "base", map[string]string{"k": "v"})(ctx, c))
	_, err = c.View(ctx, &snapshotsapi.ViewSnapshotRequest{Key: "view1", Parent: "base"})
	must(err)

	big := strings.Repeat("x", 4097)
	cases := []errCase{
		{"stat missing", codes.NotFound, errdefs.IsNotFound, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := c.Stat(ctx, &snapshotsapi.StatSnapshotRequest{Key: "nope"})
			return err
		}},
		{"prepare existing key", codes.AlreadyExists, errdefs.IsAlreadyExists, prepare("act", "", nil)},
		{"prepare existing committed name", codes.AlreadyExists, errdefs.IsAlreadyExists, prepare("base", "", nil)},
		{"prepare missing parent", codes.NotFound, errdefs.IsNotFound, prepare("x1", "nope", nil)},
		{"prepare on active parent", codes.InvalidArgument, errdefs.IsInvalidArgument, prepare("x2", "act", nil)},
		{"prepare on view parent", codes.InvalidArgument, errdefs.IsInvalidArgument, prepare("x3", "view1", nil)},
		{"prepare empty key", codes.InvalidArgument, errdefs.IsInvalidArgument, prepare("", "", nil)},
		{"prepare label too large", codes.InvalidArgument, errdefs.IsInvalidArgument, prepare("x4", "", map[string]string{"k": big})},
		{"view existing key", codes.AlreadyExists, errdefs.IsAlreadyExists, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := c.View(ctx, &snapshotsapi.ViewSnapshotRequest{Key: "view1", Parent: "base"})
			return err
		}},
		{"view missing parent", codes.NotFound, errdefs.IsNotFound, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := c.View(ctx, &snapshotsapi.ViewSnapshotRequest{Key: "v2", Parent: "nope"})
			return err
		}},
		{"commit missing key", codes.NotFound, errdefs.IsNotFound, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := c.Commit(ctx, &snapshotsapi.CommitSnapshotRequest{Name: "n1", Key: "nope"})
			return err
		}},
		{"commit a view", codes.FailedPrecondition, errdefs.IsFailedPrecondition, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := c.Commit(ctx, &snapshotsapi.CommitSnapshotRequest{Name: "n2", Key: "view1"})
			return err
		}},
		{"commit a committed key", codes.FailedPrecondition, errdefs.IsFailedPrecondition, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := c.Commit(ctx, &snapshotsapi.CommitSnapshotRequest{Name: "n3", Key: "base"})
			return err
		}},
		{"commit to an existing name", codes.AlreadyExists, errdefs.IsAlreadyExists, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := c.Commit(ctx, &snapshotsapi.CommitSnapshotRequest{Name: "base", Key: "act"})
			return err
		}},
		{"remove missing", codes.NotFound, errdefs.IsNotFound, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := c.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Key: "nope"})
			return err
		}},
		{"remove with children", codes.FailedPrecondition, errdefs.IsFailedPrecondition, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := c.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Key: "base"})
			return err
		}},
		{"mounts missing", codes.NotFound, errdefs.IsNotFound, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := c.Mounts(ctx, &snapshotsapi.MountsRequest{Key: "nope"})
			return err
		}},
		{"mounts of committed", codes.FailedPrecondition, errdefs.IsFailedPrecondition, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := c.Mounts(ctx, &snapshotsapi.MountsRequest{Key: "base"})
			return err
		}},
		{"update missing", codes.NotFound, errdefs.IsNotFound, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := c.Update(ctx, &snapshotsapi.UpdateSnapshotRequest{Info: snapshotsapi.Info{Name: "nope"}})
			return err
		}},
		{"update immutable field", codes.InvalidArgument, errdefs.IsInvalidArgument, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := c.Update(ctx, &snapshotsapi.UpdateSnapshotRequest{Info: snapshotsapi.Info{Name: "act", Parent: "x"},
				UpdateMask: &types.FieldMask{Paths: []string{"parent"}}})
			return err
		}},
		{"usage missing", codes.NotFound, errdefs.IsNotFound, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := c.Usage(ctx, &snapshotsapi.UsageRequest{Key: "nope"})
			return err
		}},
		{"list bad filter", codes.InvalidArgument, errdefs.IsInvalidArgument, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			s, err := c.List(ctx, &snapshotsapi.ListSnapshotsRequest{Filters: []string{"name=="}})
			if err != nil {
				return err
			}
			for {
				if _, err := s.Recv(); err != nil {
					return err
				}
			}
		}},
		{"unknown method", codes.Unimplemented, errdefs.IsNotImplemented, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := rawCall(ctx, d.conn, "Frobnicate", nil)
			return err
		}},
		{"unknown service", codes.Unimplemented, errdefs.IsNotImplemented, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			var resp []byte
			req := []byte{}
			return d.conn.Invoke(ctx, "/containerd.services.content.v1.Content/Info", &req, &resp, grpc.ForceCodec(rawCodec{}))
		}},
		{"bad protobuf", codes.Internal, isUnknown, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := rawCall(ctx, d.conn, "Stat", []byte{0x12, 0xff, 0x01})
			return err
		}},
		{"oversized request", codes.ResourceExhausted, isUnknown, func(ctx context.Context, c snapshotsapi.SnapshotsClient) error {
			_, err := rawCall(ctx, d.conn, "Stat", make([]byte, 16<<20+1))
			return err
		}},
	}
	for _, tc := range cases {
		err := tc.call(ctx, c)
		st, _ := status.FromError(err)
		if err == nil || st.Code() != tc.code {
			t.Errorf("%s: got %v (code %v), want code %v", tc.name, err, st.Code(), tc.code)
			continue
		}
		if cerr := errdefs.FromGRPC(err); !tc.is(cerr) {
			t.Errorf("%s: containerd sees %v, wrong class", tc.name, cerr)
		}
		// containerd-style messages do not come out doubled ("x: not found: not found")
		if cerr := errdefs.FromGRPC(err).Error(); strings.Count(cerr, ": not found") > 1 ||
			strings.Count(cerr, ": already exists") > 1 {
			t.Errorf("%s: doubled class in %q", tc.name, cerr)
		}
		t.Logf("%-32s %-18v %s", tc.name, st.Code(), st.Message())
	}

	// the same through containerd's proxy snapshotter (what containerd's
	// metadata layer calls), for the cases it has methods for
	sn := d.snapshotter()
	if _, err := sn.Stat(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("proxy Stat: %v", err)
	}
	if _, err := sn.Prepare(ctx, "act", ""); !errdefs.IsAlreadyExists(err) {
		t.Errorf("proxy Prepare existing: %v", err)
	}
	if err := sn.Commit(ctx, "n4", "view1"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("proxy Commit view: %v", err)
	}
	if err := sn.Remove(ctx, "base"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("proxy Remove with child: %v", err)
	}
	if err := sn.Walk(ctx, func(context.Context, snapshots.Info) error { return nil }, "kind=="); !errdefs.IsInvalidArgument(err) {
		t.Errorf("proxy Walk bad filter: %v", err)
	}
	if err := sn.(snapshots.Cleaner).Cleanup(ctx); err != nil {
		t.Errorf("proxy Cleanup: %v", err)
	}
}

// Messages carry UTF-8, '%' and newlines intact (grpc-message is
// percent-encoded on the wire).
func TestMessageEncoding(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	defer d.mustStop()
	ctx := context.Background()
	key := "ключ 100% \"quoted\"\nsecond line\ttab"
	_, err := d.client().Stat(ctx, &snapshotsapi.StatSnapshotRequest{Key: key})
	st, _ := status.FromError(err)
	if st.Code() != codes.NotFound || !strings.Contains(st.Message(), key) {
		t.Fatalf("got %q (%v), want the key %q in the message", st.Message(), st.Code(), key)
	}
	if !errors.Is(errdefs.FromGRPC(err), errdefs.ErrNotFound) {
		t.Fatal("not ErrNotFound")
	}
}

// Filters as containerd's metadata layer sends them for a remote snapshot.
func TestListFilters(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	defer d.mustStop()
	ctx := context.Background()
	sn := d.snapshotter()
	ref := "containerd.io/snapshot.ref"
	if _, err := sn.Prepare(ctx, "a-act", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "a", "a-act", snapshots.WithLabels(map[string]string{ref: "sha256:aaa"})); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "b-act", "a"); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "b", "b-act", snapshots.WithLabels(map[string]string{ref: "sha256:bbb", "x.y": "1"})); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		filters []string
		want    string
	}{
		{nil, "a,b"},
		{[]string{`labels."containerd.io/snapshot.ref"==sha256:bbb,parent==a`}, "b"},
		{[]string{`labels."containerd.io/snapshot.ref"==sha256:bbb,parent==b`}, ""},
		{[]string{`parent==a`, `name==a`}, "a,b"},
		{[]string{`kind==committed`}, "a,b"},
		{[]string{`kind==active`}, ""},
		{[]string{`labels."x.y"`}, "b"},
		{[]string{`name~=^[ab]$,name!=a`}, "b"},
		{[]string{`name~=/^(a|z)$/`}, "a"},
	} {
		var got []string
		err := sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error {
			got = append(got, i.Name)
			return nil
		}, tc.filters...)
		if err != nil {
			t.Errorf("%q: %v", tc.filters, err)
			continue
		}
		if s := strings.Join(got, ","); s != tc.want {
			t.Errorf("%q: got %q, want %q", tc.filters, s, tc.want)
		}
	}
}
