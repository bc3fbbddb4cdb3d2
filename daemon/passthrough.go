package daemon

import (
	"fmt"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
)

// passthroughMinMean is the average file size from which auto mode opens
// files through the daemon for passthrough. Every open then costs an OPEN
// and a RELEASE round trip, about 55 us of wall time with four readers on
// two cores (BenchmarkWarmReopen), all of it lost when the file is re-read
// from the page cache; what it buys is reads of cache files from disk at
// local-disk speed, 3-15% faster than splicing them (BenchmarkLargeCachedRead,
// best rounds), and one copy of the pages in memory instead of two. At
// 4 MiB the round trip is about 6% of a warm read and a fraction of what
// passthrough saves on a cold one; for the small files of a dataloader's
// epoch it is most of the cost.
const passthroughMinMean = 4 << 20

// choosePassthrough decides, once per mount, whether opens go to the
// daemon (so fully cached files can be passed through) or the kernel opens
// files itself. It returns the decision and the reason to log and report.
func choosePassthrough(mode Passthrough, available bool, why string, st snapshot.Stats) (bool, string) {
	const kernel = "; the kernel opens files itself (no round trip per open) and cached ranges are spliced"
	switch {
	case mode == PassthroughOff:
		return false, "passthrough off (--passthrough=off)" + kernel
	case !available:
		return false, "passthrough unavailable: " + why + kernel
	case mode == PassthroughOn:
		return true, "passthrough on: " + why
	}
	mean := int64(0)
	if st.Files > 0 {
		mean = st.Bytes / st.Files
	}
	if mean < passthroughMinMean {
		return false, fmt.Sprintf("passthrough off: files average %s, under %s, so a round trip per open would cost more than passthrough gains", humanize.IBytes(uint64(mean)), humanize.IBytes(passthroughMinMean)) + kernel
	}
	return true, fmt.Sprintf("passthrough on: files average %s; ", humanize.IBytes(uint64(mean))) + why
}
