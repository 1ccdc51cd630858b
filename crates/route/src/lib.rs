//! Routes and neighbours over rtnetlink, tagged with trellis's route protocol
