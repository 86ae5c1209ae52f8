# bash completion for framecast. The commands and options are read from the program's own
# `framecast help` and `framecast COMMAND --help`, so they never drift from it.
_framecast() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local prog=${COMP_WORDS[0]} cmds sub="" i
    cmds=$("$prog" help 2>/dev/null | awk '/^Commands:/ {f=1; next} f && /^  [a-z]/ {printf "%s ", $1}')
    for ((i = 1; i < COMP_CWORD; i++)); do
        case " $cmds " in *" ${COMP_WORDS[i]} "*) sub=${COMP_WORDS[i]}; break ;; esac
    done
    case $prev in
        --config|--file|-f) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --log-format) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
        -o|--output) COMPREPLY=($(compgen -W "lines raw framed json" -- "$cur")); return ;;
        -s|--source) COMPREPLY=($(compgen -W "time stdin stdin-framed none" -- "$cur")); return ;;
        -i|--input) COMPREPLY=($(compgen -W "lines raw framed" -- "$cur")); return ;;
        --slow-consumer) COMPREPLY=($(compgen -W "disconnect drop-oldest" -- "$cur")); return ;;
        --length-unit) COMPREPLY=($(compgen -W "bytes code-points" -- "$cur")); return ;;
    esac
    if [[ -z $sub ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--help --version --config --log-format" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
        fi
    elif [[ $sub == help ]]; then
        COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$("$prog" "$sub" --help 2>/dev/null |
                                   grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)" -- "$cur"))
    fi
}
complete -F _framecast framecast
