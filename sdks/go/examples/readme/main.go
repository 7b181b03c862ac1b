// The README's Go example: an executor serving a session of client_acme_001, a client that
// submits a task to it, and the task's outcome read back. Run it against a broker with the
// topics created and the processor running (KAFKA_BOOTSTRAP_SERVERS, TASKSTREAM_TOPIC_PREFIX).
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	taskstream "github.com/taskstream/taskstream/sdks/go"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := taskstream.ConfigFromEnv()

	handlers := taskstream.Handlers{
		"contact_create": func(ctx context.Context, task *taskstream.Task) (map[string]any, error) {
			var contact struct {
				Email string `json:"email"`
			}
			if err := task.DecodePayload(&contact); err != nil {
				return nil, err
			}
			task.ReportProgress(0.5, "creating the contact")
			return map[string]any{"created": contact.Email}, nil
		},
	}
	executor, err := taskstream.NewExecutor(ctx, handlers, 2, taskstream.WithConfig(cfg),
		taskstream.WithSessions(taskstream.SessionSpec{
			SessionID: "go_session_1", ClientID: "client_acme_001", AgentID: "go_agent", MaxConcurrent: 2,
		}))
	if err != nil {
		log.Fatal(err)
	}
	executor.SetProgressCallback(func(taskID string, status taskstream.TaskStatus, progress int, message string) {
		log.Printf("[%s] %s %d%% %s", taskID, status, progress, message)
	})
	if err := executor.Start(); err != nil {
		log.Fatal(err)
	}
	defer executor.Shutdown(10 * time.Second)

	client, err := taskstream.NewClient(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	taskID, err := client.Submit(ctx, "client_acme_001", "contact_create",
		map[string]any{"email": "john@example.com"}, taskstream.WithPriority(2))
	if err != nil {
		log.Fatal(err)
	}

	outcomes, err := client.Outcomes("go-readme")
	if err != nil {
		log.Fatal(err)
	}
	defer outcomes.Close(true)
	for {
		outcome, err := outcomes.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if outcome.TaskID() == taskID {
			fmt.Println(outcome.Kind(), outcome.Completed.Output)
			return
		}
	}
}
