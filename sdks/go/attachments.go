package taskstream

import (
	"fmt"
	"net/url"
	"strings"
	"unicode"
)

// The rules a task's attachments meet (streams/domain/attachments.py): checked before a
// SubmitTask is produced, so a bad link fails here, not as task.rejected later.
const (
	maxAttachments      = 20
	maxAttachmentName   = 255
	maxAttachmentURL    = 2048
	maxAttachmentMedium = 255
)

func (v *validator) attachments(list []TaskAttachment) {
	if len(list) > maxAttachments {
		v.fail("attachments", fmt.Sprintf("more than %d attachments (%d)", maxAttachments, len(list)))
		return
	}
	for i, a := range list {
		where := fmt.Sprintf("attachments[%d]", i)
		if problem := attachmentURLProblem(a.URL); problem != "" {
			v.fail(where+".url", problem)
		}
		name := []rune(a.Name)
		switch {
		case strings.TrimSpace(a.Name) == "":
			v.fail(where+".name", "must not be empty")
		case len(name) > maxAttachmentName:
			v.fail(where+".name", fmt.Sprintf("longer than %d characters", maxAttachmentName))
		case strings.IndexFunc(a.Name, unicode.IsControl) >= 0:
			v.fail(where+".name", "control characters (line breaks, NUL, ...) are not allowed")
		}
		if a.SizeBytes != nil && *a.SizeBytes < 0 {
			v.fail(where+".size_bytes", fmt.Sprintf("must be >= 0, not %d", *a.SizeBytes))
		}
		if a.ContentType != nil {
			kind := *a.ContentType
			slash := strings.IndexByte(kind, '/')
			if slash <= 0 || slash == len(kind)-1 || len(kind) > maxAttachmentMedium || strings.ContainsAny(kind, " \t\r\n") {
				v.fail(where+".content_type", fmt.Sprintf("must be a media type such as application/pdf, not %q", kind))
			}
		}
	}
}

func attachmentURLProblem(text string) string {
	if len([]rune(text)) > maxAttachmentURL {
		return fmt.Sprintf("longer than %d characters", maxAttachmentURL)
	}
	if strings.IndexFunc(text, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "must not contain spaces or control characters"
	}
	u, err := url.Parse(text)
	if err != nil {
		return fmt.Sprintf("not a valid URL: %q", text)
	}
	if scheme := strings.ToLower(u.Scheme); scheme != "http" && scheme != "https" {
		return fmt.Sprintf("must be an http or https URL, not %q", text)
	}
	if u.Hostname() == "" {
		return fmt.Sprintf("must name a host: %q", text)
	}
	if u.User != nil {
		return "must not carry a user name or password (share a link without credentials)"
	}
	return ""
}
