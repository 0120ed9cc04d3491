import { graphql } from './generated';

// Every operation the console sends, typed by graphql-codegen against schema/schema.graphql.

export const MeQuery = graphql(`
  query ConsoleMe {
    me {
      role
      spaceId
      principalId
      user {
        id
        handle
      }
    }
  }
`);

export const ActionFieldsFragment = graphql(`
  fragment ConsoleActionFields on Action {
    id
    type
    status
    headline
    details {
      label
      value
      isList
      format
    }
    payload
    priority
    userId
    requestedBy
    createdAt
    updatedAt
    approvalExpiresAt
    requiresApproval
    revision
    revisions {
      revision
      author
      diff
      createdAt
    }
    approvalsRequired
    decisions {
      approver
      decision
      comment
      revision
      createdAt
    }
    error
  }
`);

export const PendingActionsQuery = graphql(`
  query ConsolePendingActions($first: Int!) {
    actions(first: $first, filter: { status: [PENDING] }) {
      edges {
        node {
          ...ConsoleActionFields
        }
      }
      pageInfo {
        hasNextPage
      }
    }
  }
`);

export const RecentActionsQuery = graphql(`
  query ConsoleRecentActions($filter: ActionFilter, $first: Int!) {
    actions(first: $first, filter: $filter) {
      edges {
        node {
          id
          type
          status
          headline
          updatedAt
        }
      }
      pageInfo {
        hasNextPage
      }
    }
  }
`);

export const ActionTypesQuery = graphql(`
  query ConsoleActionTypes {
    actionTypes {
      type
      description
      payloadSchema
    }
  }
`);

export const ActionEventsSubscription = graphql(`
  subscription ConsoleActionEvents {
    actionEvents {
      actionId
      status
      seq
      message
      action {
        ...ConsoleActionFields
      }
    }
  }
`);

export const ApproveMutation = graphql(`
  mutation ConsoleApprove($id: ID!, $comment: String, $payload: JSON) {
    approveAction(id: $id, comment: $comment, payload: $payload) {
      action {
        id
        status
        revision
      }
      errors {
        code
        message
        field
      }
    }
  }
`);

export const RejectMutation = graphql(`
  mutation ConsoleReject($id: ID!, $reason: String) {
    rejectAction(id: $id, reason: $reason) {
      action {
        id
        status
      }
      errors {
        code
        message
        field
      }
    }
  }
`);

export const ActionTimelineQuery = graphql(`
  query ConsoleActionTimeline($id: ID!) {
    action(id: $id) {
      ...ConsoleActionFields
      result
      statusUpdates {
        seq
        status
        message
        timestamp
      }
      executions {
        id
        handler
        kind
        attempt
        status
        startedAt
        finishedAt
        error
        externalRef
      }
      receipts {
        id
        receiptNumber
        handler
        provider
        externalRef
        keyId
        signature
        createdAt
      }
    }
  }
`);

export const ActionStatusSubscription = graphql(`
  subscription ConsoleActionStatus($actionId: ID!) {
    actionStatus(actionId: $actionId) {
      seq
      status
      message
      timestamp
    }
  }
`);

export const ManualTasksQuery = graphql(`
  query ConsoleManualTasks($first: Int!) {
    manualTasks(first: $first, status: OPEN) {
      edges {
        node {
          id
          instructions
          status
          createdAt
          action {
            id
            type
            headline
            status
          }
        }
      }
      pageInfo {
        hasNextPage
      }
    }
  }
`);

export const CompleteTaskMutation = graphql(`
  mutation ConsoleCompleteTask($id: ID!, $outcome: JSON) {
    completeManualTask(id: $id, outcome: $outcome) {
      task {
        id
        status
      }
      errors {
        code
        message
        field
      }
    }
  }
`);

export const AuditQuery = graphql(`
  query ConsoleAudit($first: Int, $before: String, $actionId: ID, $filter: AuditFilter) {
    auditLog(last: $first, before: $before, actionId: $actionId, filter: $filter) {
      edges {
        node {
          id
          chain
          chainSeq
          event
          actor
          createdAt
          data
          hash
        }
      }
      pageInfo {
        hasPreviousPage
        startCursor
      }
    }
  }
`);

export const AuditVerificationQuery = graphql(`
  query ConsoleAuditVerification {
    auditVerification {
      ok
      entriesChecked
      checkpoints
      sealed
      unsealed
      problem
    }
  }
`);
