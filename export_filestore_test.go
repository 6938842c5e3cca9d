package dropboxsign

// The FileStore journal's file names and rotation size, for tests that
// write to it as another program could.
const (
	JournalName = journalName
	JournalOld  = journalOld
	JournalMax  = journalMax
)

// SetFileStoreStage makes FileStore writes call fn at their stages
// ("written", "journal"), for a child process that must be killed there.
func SetFileStoreStage(fn func(stage string)) { fileStoreStage = fn }
