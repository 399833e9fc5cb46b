package snapshotter

import (
	"reflect"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
)

func TestRecordRoundTrip(t *testing.T) {
	created := time.Date(2026, 12, 4, 16, 0, 0, 123456789, time.UTC)
	for _, info := range []snapshots.Info{
		{Kind: snapshots.KindActive, Name: "default/1/extract-1 sha256:ab", Created: created, Updated: created},
		{Kind: snapshots.KindView, Name: "v", Parent: "p/q", Created: created,
			Updated: created.Add(time.Second), Labels: map[string]string{"a.b": "c", "label.x": "y"}},
		{Kind: snapshots.KindCommitted, Name: "sha256:00", Parent: "x", Created: created,
			Updated: created, Labels: map[string]string{"containerd.io/gc.root": "now"}},
	} {
		labels := map[string]string{}
		encodeInfo(labels, slotCommitted, info)
		got, ok := decodeInfo(labels, slotCommitted)
		if !ok || !reflect.DeepEqual(got, info) {
			t.Errorf("round trip of %+v gave %+v, %v", info, got, ok)
		}
		if _, ok := decodeInfo(labels, slotActive); ok {
			t.Errorf("active slot decoded from a committed record: %v", labels)
		}
	}
}

// A commit writes the committed slot beside the active one; each slot
// must read back alone, and rewriting one must leave the other.
func TestRecordSlotsApart(t *testing.T) {
	now := time.Now().UTC()
	a := snapshots.Info{Kind: snapshots.KindActive, Name: "key", Created: now, Updated: now,
		Labels: map[string]string{"l": "1"}}
	c := snapshots.Info{Kind: snapshots.KindCommitted, Name: "name", Created: now, Updated: now,
		Labels: map[string]string{"m": "2"}}
	labels := map[string]string{}
	encodeInfo(labels, slotActive, a)
	encodeInfo(labels, slotCommitted, c)
	a.Labels["l"] = "changed"
	encodeInfo(labels, slotActive, a)

	gotA, _ := decodeInfo(labels, slotActive)
	gotC, _ := decodeInfo(labels, slotCommitted)
	if gotA.Name != "key" || gotA.Labels["l"] != "changed" || len(gotA.Labels) != 1 {
		t.Errorf("active slot: %+v", gotA)
	}
	if gotC.Name != "name" || gotC.Labels["m"] != "2" || len(gotC.Labels) != 1 {
		t.Errorf("committed slot: %+v", gotC)
	}
}

func TestRecordIncomplete(t *testing.T) {
	for _, labels := range []map[string]string{
		nil,
		{"a.name": "x"},
		{"a.name": "x", "a.kind": "active", "a.created": "yesterday", "a.updated": "2026-12-04T00:00:00Z"},
		{"a.name": "x", "a.kind": "sideways", "a.created": "2026-12-04T00:00:00Z",
			"a.updated": "2026-12-04T00:00:00Z"},
	} {
		if info, ok := decodeInfo(labels, slotActive); ok {
			t.Errorf("decoded %+v from %v", info, labels)
		}
	}
}

func TestIDOf(t *testing.T) {
	keys := []string{"", "a", "default/12/extract-34 sha256:56", "/var/tmp/work/preparing", "../x"}
	seen := map[string]string{}
	for _, k := range keys {
		id := idOf(k)
		if len(id) != 32 || id == baseID {
			t.Errorf("idOf(%q) = %q", k, id)
		}
		for _, c := range id {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				t.Errorf("idOf(%q) = %q has %q", k, id, c)
			}
		}
		if other, dup := seen[id]; dup {
			t.Errorf("idOf(%q) == idOf(%q)", k, other)
		}
		seen[id] = k
		if idOf(k) != id {
			t.Errorf("idOf(%q) is not stable", k)
		}
	}
}

func FuzzRecord(f *testing.F) {
	f.Add("default/1/k", "parent", "containerd.io/gc.root", "v", int64(1764864000123456789), uint8(2))
	f.Add("", "", "", "", int64(0), uint8(1))
	f.Fuzz(func(t *testing.T, name, parent, lk, lv string, nanos int64, kind uint8) {
		k := snapshots.Kind(kind%3 + 1)
		at := time.Unix(0, nanos).UTC()
		info := snapshots.Info{Kind: k, Name: name, Parent: parent, Created: at, Updated: at,
			Labels: map[string]string{lk: lv}}
		labels := map[string]string{}
		encodeInfo(labels, slotActive, info)
		got, ok := decodeInfo(labels, slotActive)
		if !ok {
			t.Fatalf("no record decoded from %v", labels)
		}
		if !reflect.DeepEqual(got, info) {
			t.Fatalf("round trip of %+v gave %+v", info, got)
		}
	})
}
