-- A sign-in attempt's reservation (src/store/login-failures.ts) is named by a key the server
-- makes before it sends the reservation: when the connection is lost after the reservation
-- committed but before its answer arrived, the server never learnt the row's id, and the row
-- would stay in flight (a place taken in the window, then a failure after a minute). With the
-- key, the server deletes it. NULL for rows written before this migration.
ALTER TABLE login_failures ADD COLUMN attempt_key uuid;
