package snapshotter

import (
	"maps"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
)

// A dataset's zlayer labels carry up to two records of containerd's
// snapshots.Info, each in its own slot: the active slot is read while the
// dataset is a zlayer clone (an active snapshot or a view), the committed
// slot while it is a committed zlayer layer.
//
// Commit writes the committed slot into the clone first and then has
// zlayer turn the clone into a layer, so at every instant the slot that
// zlayer's own state selects is complete: a crash before CommitClone leaves
// an active snapshot with a stale committed slot, which is ignored; a crash
// after it leaves a committed snapshot.
const (
	slotActive    = "a."
	slotCommitted = "c."
)

// Field names within a slot; a containerd label k is stored as "label.k".
const (
	fieldName    = "name"
	fieldKind    = "kind"
	fieldParent  = "parent"
	fieldCreated = "created"
	fieldUpdated = "updated"
	fieldLabel   = "label."
)

// encodeInfo writes info into slot of labels, replacing what was there.
func encodeInfo(labels map[string]string, slot string, info snapshots.Info) {
	dropSlot(labels, slot)
	labels[slot+fieldName] = info.Name
	labels[slot+fieldKind] = strings.ToLower(info.Kind.String())
	if info.Parent != "" {
		labels[slot+fieldParent] = info.Parent
	}
	labels[slot+fieldCreated] = info.Created.UTC().Format(time.RFC3339Nano)
	labels[slot+fieldUpdated] = info.Updated.UTC().Format(time.RFC3339Nano)
	for k, v := range info.Labels {
		labels[slot+fieldLabel+k] = v
	}
}

// decodeInfo reads the record in slot; ok is false when the slot holds no
// complete record.
func decodeInfo(labels map[string]string, slot string) (info snapshots.Info, ok bool) {
	name, ok := labels[slot+fieldName]
	if !ok {
		return snapshots.Info{}, false
	}
	info.Name = name
	info.Kind = snapshots.ParseKind(labels[slot+fieldKind])
	if info.Kind == snapshots.KindUnknown {
		return snapshots.Info{}, false
	}
	info.Parent = labels[slot+fieldParent]
	var err error
	if info.Created, err = parseTime(labels[slot+fieldCreated]); err != nil {
		return snapshots.Info{}, false
	}
	if info.Updated, err = parseTime(labels[slot+fieldUpdated]); err != nil {
		return snapshots.Info{}, false
	}
	prefix := slot + fieldLabel
	for k, v := range labels {
		if rest, found := strings.CutPrefix(k, prefix); found {
			if info.Labels == nil {
				info.Labels = make(map[string]string)
			}
			info.Labels[rest] = v
		}
	}
	return info, true
}

// parseTime reads a time encodeInfo wrote. Times come back in UTC and
// without a monotonic reading, so two decodings of one record are equal
// by ==.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t.UTC(), err
}

// dropSlot removes every field of slot from labels.
func dropSlot(labels map[string]string, slot string) {
	maps.DeleteFunc(labels, func(k, _ string) bool { return strings.HasPrefix(k, slot) })
}

// roundTrip returns info as a later decoding will see it.
func roundTrip(info snapshots.Info) snapshots.Info {
	labels := make(map[string]string)
	encodeInfo(labels, slotActive, info)
	out, _ := decodeInfo(labels, slotActive)
	return out
}
