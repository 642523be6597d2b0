// Start-up failures an operator can fix: each is one line on stderr that says what to do,
// and exit code 2, as a wrong setting is. The JSON log still gets the whole error.

/** A failure whose message is the whole story: printed as one line, without a stack trace. */
export class StartupError extends Error {}

/** A port keymanager needs is held by another process; `setting` is the variable that moves it. */
export class PortInUseError extends StartupError {
  readonly port: number;
  readonly setting: string;

  constructor(port: number, setting: string) {
    super(`port ${port} (${setting}) is already in use — is another keymanager running here? Set ${setting} to another port.`);
    this.port = port;
    this.setting = setting;
  }
}
